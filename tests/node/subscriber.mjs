// A subscriber written in another language than the monitor: Node's `zeromq` package (v6)
// and the standard JSON.parse, as a lab's own tools would read the bus.
// Usage: node subscriber.mjs ENDPOINT   (prints "ready", then receives until stdin closes,
// then prints one JSON line: messages per topic, null fields per topic.field, parse failures)
import zmq from "zeromq";

const endpoint = process.argv[2];
const socket = new zmq.Subscriber();
socket.connect(endpoint);
socket.subscribe();
const counts = {};
const nulls = {};
const failures = [];
process.stdin.on("end", () => socket.close());
process.stdin.resume();
console.log("ready");
try {
  for await (const [topic, payload] of socket) {
    const name = topic.toString();
    counts[name] = (counts[name] ?? 0) + 1;
    try {
      for (const [key, value] of Object.entries(JSON.parse(payload.toString()))) {
        if (value === null) nulls[`${name}.${key}`] = (nulls[`${name}.${key}`] ?? 0) + 1;
      }
    } catch (error) {
      failures.push(`${name}: ${error.message}`);
    }
  }
} catch (error) {
  if (!socket.closed) throw error; // closing mid-receive ends the loop, nothing else does
}
console.log(JSON.stringify({ counts, nulls, failures }));
