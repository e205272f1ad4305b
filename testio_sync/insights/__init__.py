"""The read side: answers from the local mirror (the quality report, its filters and its text)."""
