"""Fitting the device to its machines: calibrate, enrol and tune (new bundle versions
made on the device) and the clips they learn from."""
