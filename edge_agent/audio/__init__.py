"""Audio in and out: WAV reading and writing, PCM conversions, resampling, DCASE file names."""
