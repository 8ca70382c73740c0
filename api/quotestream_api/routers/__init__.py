"""One router per resource: quotes (latest, history, the push relay), pairs, health."""
