"""oibus: the OpenIntent Coordination Protocol on Redis."""
