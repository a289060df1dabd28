"""Events: what an object handles one at a time, their registry by kind, errors as data."""
