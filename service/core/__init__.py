"""Configuration, security, logging and metrics shared by the whole service."""
