"""Command-line apps (absl): each parses flags and calls the library."""
