"""Discord commands, buttons, reactions and listeners: one feature per module.

Cogs reach the rest of the bot through ``bot.jobs`` (core.jobs.JobService), ``bot.store``
(core.history.HistoryStore) and ``bot.engine``; they import ``engine.requests`` at most,
never ``engine.worker`` (torch, diffusers and transformers stay out of this package).
"""
