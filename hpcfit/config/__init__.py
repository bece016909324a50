"""Configuration: YAML with line numbers, declared keys, validation that reports every problem at once."""
