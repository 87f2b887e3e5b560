"""Frame processors: stateful frame-in, frame-out units shared by video files and live streams.

Each implements `base.FrameProcessor`: `prepare(options) -> state` once (sources analysed,
models loaded), then `process(frame, state, t)` per frame and `close(state)`, so a file, a
camera and the API's live stream all run the same code.
"""
