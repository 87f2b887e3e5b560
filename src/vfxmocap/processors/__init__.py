"""Frame processors: stateful frame-in, frame-out units shared by video files and live streams.

A processor analyses its sources once (`prepare(options, ...) -> state`) and then turns
frames into frames (`process(frame, state)`), so a file, a camera and the API's live stream
all run the same code.
"""
