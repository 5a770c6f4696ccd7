"""`mgs-label`: turn monitor evidence, or any folder of images, into label CSVs for mgs-train.

Every error a user can cause ends in one line `mgs-label: error: ...` naming the file, key or
value, with exit code 2 (as mgs-monitor does).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError

DESCRIPTION = """\
Blind MGS scoring in a web browser, for one rater or several, into label CSVs that mgs-train
and mgs-train-localizer read as they are.

  1. queue    pick the images: a random sample (marked `random`) and the crops the model was
              least sure of (`uncertain`, spread over mice and time) from the monitor's score
              CSVs, plus cubicles of kept full frames to draw face boxes on; about 10% of the
              faces come back later, unannounced, to measure each rater's consistency
  2. serve    the scoring page: no mouse, camera, time or condition is shown; each rater sees
              their own order and progress and can stop and resume at any time; the
              coordinator alone sees the agreement page and writes the label files
  3. export   labels.csv (+ labels-random.csv), boxes.csv and provenance.csv, with mouse ids
              and the lab's conditions joined back in
  4. release  let the monitor's disk budget have the evidence the project pinned
"""

EPILOG = """\
examples:
  mgs-label queue mgs-records/scores-*.csv --project study1 --random 200 --uncertain 100 \\
      --frames 20                       from monitor evidence (CSVs + evidence/)
  mgs-label queue --images photos/ --project study2
                                        any folder of face images (all `random`)
  mgs-label serve study1                raters open the address in study1/access/rater-url
  mgs-label serve study1 --host 0.0.0.0 --tls-cert lab.pem --tls-key lab.key
                                        raters on other machines, over HTTPS
  mgs-label export study1 --conditions mice.csv
  mgs-label release study1              the study is done: its evidence may go
  mgs-train --labels study1/labels.csv
  mgs-train-localizer --labels study1/boxes.csv

keys on the scoring page:
  0 1 2 x    level of the highlighted unit (x = not scoreable); moves to the next unit, and
             the fifth saves the image and shows the next: 5 keys per image
  Backspace  take back the last unit keyed; with none keyed, undo the last saved image (or u)
  Enter      save (when all five are keyed)      s   skip for now (it comes back at the end)
  on face boxes: drag a box then Enter, a = accept the suggested box, n = no face visible
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"mgs-label: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgs-label", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_queue(sub)
    _add_serve(sub)
    _add_export(sub)
    _add_release(sub)
    return parser


def _add_queue(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    queue = sub.add_parser(
        "queue", help="make a project folder of images to label",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make a project folder from the monitor's evidence (score CSVs of score\n"
        "schema 3 and the evidence folder their crops are in) or from a folder of images.\n"
        "Queued evidence files are added to its pinned.txt so the monitor's disk budget\n"
        "never deletes them (until `mgs-label release DIR`); images are copied into the\n"
        "project under opaque ids.",
        epilog="example:\n  mgs-label queue records/scores-*.csv --project study1 "
        "--random 200 --uncertain 100 --frames 20")
    queue.add_argument("scores", nargs="*", type=Path, metavar="SCORES.csv",
                       help="score CSVs written by mgs-monitor: files, a rotating logger's "
                       "folder, or a quoted glob; side files (gaps, markers, alerts) are "
                       "left out")
    queue.add_argument("--images", type=Path, metavar="FOLDER",
                       help="instead: every image under FOLDER, all `random`, no probabilities")
    queue.add_argument("--project", type=Path, required=True, metavar="DIR",
                       help="new folder for the project (refused if it holds a queue already)")
    queue.add_argument("--random", type=int, metavar="N",
                       help="faces drawn at random (default 100; with --images: all images)")
    queue.add_argument("--uncertain", type=int, default=50, metavar="N",
                       help="faces the model was least sure of: highest entropy of its 5x3 "
                       "probabilities, taken round-robin over mice (default %(default)s)")
    queue.add_argument("--min-gap", type=float, default=600.0, metavar="S",
                       help="uncertain crops of one mouse at least S seconds apart "
                       "(default %(default)s)")
    queue.add_argument("--frames", type=int, default=0, metavar="N",
                       help="full frames drawn at random from the evidence's frames.csv; each "
                       "cubicle becomes one image to draw the face box on (default 0)")
    queue.add_argument("--repeat", type=float, default=0.1, metavar="F",
                       help="share of faces shown a second time to each rater, unannounced "
                       "(default %(default)s)")
    queue.add_argument("--seed", type=int, default=0, help="for the draws and each rater's "
                       "order (default %(default)s)")
    queue.set_defaults(func=cmd_queue)


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve", help="the scoring page (and the coordinator's agreement page, /agreement)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the scoring page (waitress: idle connections closed after a\n"
        "minute, request bodies over 1 MB refused). Every answer is on disk (answers.jsonl,\n"
        "fsynced) before the page shows the next image. Ctrl-C stops it; nothing is lost.\n\n"
        "Two tokens, each from the environment or else from a file in DIR/access/ (made,\n"
        "192 random bits, when missing; fewer than 128 bits are refused):\n"
        "  raters       $MGS_LABEL_TOKEN or DIR/access/rater-token: the scoring page\n"
        "  coordinator  $MGS_LABEL_COORDINATOR_TOKEN or DIR/access/coordinator-token: also\n"
        "               /agreement (kappas, ICCs, each rater's consistency) and its button\n"
        "               that writes the CSVs as `export` does\n"
        "The addresses to hand out, each carrying its token once, are written to\n"
        "DIR/access/rater-url and DIR/access/coordinator-url; the terminal shows only the\n"
        "tokens' first characters. A rater's name belongs to the browser that gave it first.",
        epilog="example:\n  mgs-label serve study1 --conditions mice.csv")
    serve.add_argument("project", type=Path, metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default %(default)s); on any other, give "
                       "--tls-cert and --tls-key or reach it through an SSH tunnel")
    serve.add_argument("--port", type=int, default=8765, help="default %(default)s")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM",
                       help="serve HTTPS with this certificate (chain), with --tls-key")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    serve.add_argument("--max-raters", type=int, default=20, metavar="N",
                       help="names the page accepts (default %(default)s)")
    serve.add_argument("--conditions", type=Path, metavar="CSV",
                       help="mouse,condition table used by the page's export button")
    serve.set_defaults(func=cmd_serve)


def _add_export(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = sub.add_parser(
        "export", help="write labels.csv, labels-random.csv, boxes.csv, provenance.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write the label CSVs into DIR from its answers log (safe while `serve`\n"
        "runs). A rater's repeat answers are kept out of the label rows: they measure\n"
        "consistency only. Each file is written whole to .tmp and renamed.\n\n"
        "  labels.csv         image, five units (blank = not scoreable), mouse, condition,\n"
        "                     rater: one row per image and rater (mgs-train --labels)\n"
        "  labels-random.csv  the same for the randomly drawn images only (evaluation)\n"
        "  boxes.csv          cubicle images with the face box in their pixels, units blank\n"
        "                     (mgs-train-localizer --labels)\n"
        "  provenance.csv     every queued image: selection (random / uncertain), mouse,\n"
        "                     condition, camera, times, source file",
        epilog="example:\n  mgs-label export study1 --conditions mice.csv && "
        "mgs-train --labels study1/labels.csv")
    export.add_argument("project", type=Path, metavar="DIR")
    export.add_argument("--conditions", type=Path, metavar="CSV",
                        help="the lab's mouse -> condition table, columns mouse,condition")
    export.add_argument("--release", action="store_true",
                        help="then release the evidence the project pinned (as `release`)")
    export.set_defaults(func=cmd_export)


def _add_release(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    release = sub.add_parser(
        "release", help="unpin the evidence this project pinned",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Remove from the evidence folder's pinned.txt the lines this project's\n"
        "queue added (noted in DIR/pins.json), and only those: files an alert or another\n"
        "project pinned stay pinned. The monitor's disk budget may then remove the files,\n"
        "oldest first; the project keeps its own copies of the images. Once per project: a\n"
        "second run changes nothing.",
        epilog="example:\n  mgs-label export study1 --conditions mice.csv && "
        "mgs-label release study1")
    release.add_argument("project", type=Path, metavar="DIR")
    release.set_defaults(func=cmd_release)


def cmd_queue(args: argparse.Namespace) -> int:
    from . import queue

    if args.images is not None and args.scores:
        raise UserError("give score CSVs or --images FOLDER, not both")
    if args.images is None and not args.scores:
        raise UserError("give the score CSVs to queue from, or --images FOLDER")
    for name in ("random", "uncertain", "frames"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UserError(f"--{name} {value}: must be 0 or more")
    if not 0 <= args.repeat <= 1:
        raise UserError(f"--repeat {args.repeat}: must be a share between 0 and 1")
    if args.images is not None:
        report = queue.from_images(args.images, args.project, random=args.random,
                                   repeat=args.repeat, seed=args.seed)
    else:
        random = 100 if args.random is None else args.random
        report = queue.from_evidence(
            score_files(args.scores), args.project, random=random,
            uncertain=args.uncertain, frames=args.frames, repeat=args.repeat, seed=args.seed,
            min_gap=args.min_gap)
    print(f"{args.project}:\n{report}")
    return 0


def score_files(named: list[Path]) -> list[Path]:
    """The score CSVs named as `mgs-monitor report` takes them: files, a rotating logger's
    folder or a quoted glob, in time order, the side files beside them (gaps, markers,
    alerts) left out, so that `records/scores*.csv` expanded by the shell works too."""
    from monitor.views.series_report import ReportError, score_csvs

    try:
        return score_csvs(named)
    except ReportError as exc:
        raise UserError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args.project, args.host, args.port, args.conditions,
                 max_raters=args.max_raters, tls_cert=args.tls_cert, tls_key=args.tls_key)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_folder

    print(export_folder(args.project, args.conditions))
    if args.release:
        return cmd_release(args)
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from .evidence import release

    print("\n".join(release(args.project)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
