"""Portrait animation: a still portrait driven by a video, a camera, or edited by sliders."""
