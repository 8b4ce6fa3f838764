"""The Discord widgets: buttons, the Remix form, and which of them go under which message.

- :mod:`cogs.ui.layout`: the buttons a message shows and their custom ids (``job:<id>:<action>``,
  ``tile:<id>``, ``describe:<n>``); :class:`~cogs.ui.layout.Layout` is the ``core.controls.Controls``
  that ``bot.py`` hands the job service, so ``core`` posts controls without defining any.
- :mod:`cogs.ui.buttons`: what a click does (``DynamicItem`` templates, registered by the cogs), rebuilt
  from the custom id and the database, so buttons of messages posted before a restart keep working.
- :mod:`cogs.ui.remix`: the Remix form and its submit.
- :mod:`cogs.ui.client`: the bot an interaction reached.
"""
