"""allotment: a budget in front of every AI call."""
