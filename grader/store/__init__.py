"""What is kept: the gradebook, atomic writes, who submitted what, exports and feedback."""
