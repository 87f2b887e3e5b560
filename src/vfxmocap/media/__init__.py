"""Media I/O on PyAV and OpenCV: frames are RGB uint8 arrays, HxWx3, C-contiguous."""
