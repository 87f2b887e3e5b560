"""Vision: faces, landmarks, tracking, head pose, segmentation and filters."""
