"""Vision: faces, landmarks, tracking, head pose, segmentation and filters."""

import os

# MediaPipe's C++ core logs through glog/absl to stderr; keep it to errors unless asked.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
