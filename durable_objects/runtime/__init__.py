"""The host: runs objects on the process's event loop, one event at a time per object."""
