"""The shared kernel: what every layer may import and nothing else (errors, settings, the JSON messages
on the queues, the retry policy, UID rules). It imports no other dermnode package."""
