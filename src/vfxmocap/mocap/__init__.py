"""Motion capture: tracking takes, filtering, skeletons and exports (BVH, JSON, CSV, Live Link,
OpenPose control video, mattes)."""
