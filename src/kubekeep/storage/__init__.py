"""Storage backends: where a repository's objects live. See ``base.Backend``."""
