"""The demo: DEMO models trained on synthetic mouse faces, and a synthetic four-camera scene.

It stands on monitor/ (to run), synth/ (to draw the faces and the scene), train/ (to make the
models) and export/ (to write them); none of them depends on it.
"""
