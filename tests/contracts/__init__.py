"""Contract tests: classes that each backend's test module subclasses once."""
