"""Identity and access: who is asking, and what they may do."""
