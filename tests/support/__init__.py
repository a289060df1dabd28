"""What the tests share: objects, settings, servers, process helpers, browser fixtures."""
