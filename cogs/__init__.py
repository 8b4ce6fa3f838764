"""Discord commands, buttons, reactions and listeners: one feature per module.

Cogs reach the rest of the bot through ``bot.jobs`` (core.jobs.JobService), ``bot.store``
(core.history.HistoryStore) and ``bot.engine`` (an ``engine.api.ImageEngine``, every call awaited);
from the engine package they import ``engine.api`` only (torch, diffusers and transformers stay out).
"""
