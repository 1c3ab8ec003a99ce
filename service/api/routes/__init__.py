"""One router per resource: predictions, feedback, codes, model, health and metrics."""
