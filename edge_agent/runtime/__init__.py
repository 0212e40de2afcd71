"""One machine's path at run time: the source reader thread cuts windows, each window is
checked for health, scored, decided on, kept (history, evidence); and the offline
window loop of `edge-agent score`."""
