"""The REST routes of the fake Discord, one module per group; each group is a room of ``FakeDiscord``."""
