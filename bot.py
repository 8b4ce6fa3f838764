"""Start the bot: ``python bot.py``. Settings come from the environment and ``.env`` (see ``.env.example``).

``python bot.py --help`` lists the other uses (``--backup DIR``, ``--purge-user USER_ID``). One bot per
database: a lock beside it (``core.dblock``) turns a second one away.

settings -> HistoryStore -> engine (``ENGINE_BACKEND``: ``local`` = engine.local.LocalEngine in this
process, ``ray`` = engine.cluster.client.ClusterEngine on a Ray Serve cluster) -> ImagineBot -> run until
SIGTERM/SIGINT, then stop taking work, let the running job finish for a bounded time, and close the
database cleanly. This is the one place that knows which engine it is; everything else sees
``engine.api.ImageEngine``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import aiohttp
import discord
import discord.http
from discord.ext import commands
from dotenv import load_dotenv

from cogs.ui.layout import Layout
from core.dblock import DatabaseInUse, lock_database
from core.forget import add_purge_argument, configured_database, purge_user
from core.guilds import PUBLIC_WARNING, GuildGate, install_gateway_filter
from core.history import HistoryError, HistoryStore
from core.history.backup import BackupError, backup_all
from core.inputs import InputStore
from core.jobs import JobService
from core.runlog import RunLog, open_run_log
from core.settings import BotSettings, SettingsError, apply_endpoints
from core.tree import ImagineTree
from engine.api import ImageEngine
from engine.settings import EngineSettings

log = logging.getLogger("imagine_bot")

# Loaded in this order in setup_hook; a failure is logged loudly and the rest still load.
EXTENSIONS = (
    "cogs.imagine",
    "cogs.history",
    "cogs.queue",
    "cogs.admin",
    "cogs.channels",
    "cogs.prefs",
    "cogs.help",
    "cogs.describe",
)

EXIT_CONFIG = 2  # missing or bad settings, token refused, intent not enabled
EXIT_FAILURE = 1
RAY_CLIENT_MISSING = "ENGINE_BACKEND=ray needs the cluster client: pip install -e '.[ray]'"
TURBO_LICENCE_WARNING = (
    "the draft model is SDXL Turbo ({model}): its licence (Stability AI's non-commercial research community "
    "licence) does not allow commercial use; see the README's model licences"
)


# An image bot never joins voice: no warnings about voice libraries at every start.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class ImagineBot(commands.AutoShardedBot):
    """The bot: holds the store, the engine and the job service for the cogs.

    Auto-sharded: Discord says how many shards the bot needs (``GET /gateway/bot``) and one process
    runs them all. History stays in one SQLite file, so there is one bot process.
    Cogs type their ``self.bot`` as this class; buttons reach it through ``cogs.ui.client.bot_of``.
    """

    settings: BotSettings
    store: HistoryStore
    engine: ImageEngine
    jobs: JobService
    failed_extensions: list[str]  # extensions that did not load (logged loudly in setup_hook)

    def __init__(
        self, *, settings: BotSettings, store: HistoryStore, engine: ImageEngine, run_log: RunLog | None = None
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = settings.message_content
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            tree_cls=ImagineTree,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.settings = settings
        self.store = store
        self.engine = engine
        self.jobs = JobService(
            client=self,
            store=store,
            engine=engine,
            settings=settings,
            controls=Layout(),
            inputs=InputStore.beside(Path(store.path)),
            run_log=run_log,
        )
        self.failed_extensions = []
        self._closing_started = False
        self.gate = GuildGate(settings.allowed_guilds)
        install_gateway_filter(self._connection.parsers, self.gate)

    async def setup_hook(self) -> None:
        for name in EXTENSIONS:
            try:
                await self.load_extension(name)
            except Exception:
                self.failed_extensions.append(name)
                log.exception("EXTENSION %s FAILED TO LOAD: its commands and listeners are missing", name)
        if self.settings.sync_commands:
            if self.settings.guild_id is not None:
                guild = discord.Object(self.settings.guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to server %s", len(synced), self.settings.guild_id)
            else:
                synced = await self.tree.sync()
                log.info("synced %d global commands (Discord may take a while to show changes)", len(synced))
        await self.jobs.start()
        if self.gate.open:
            try:
                public = (await self.application_info()).bot_public
            except discord.HTTPException as e:
                log.warning("could not read the application's settings (is it public?): %s", e)
            else:
                if public:
                    log.warning(PUBLIC_WARNING)

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: a message that mentions the bot is not a command (the cogs' listeners see it)."""

    async def on_ready(self) -> None:
        log.info("ready as %s (id %s) in %d servers", self.user, self.user.id if self.user else "?", len(self.guilds))
        for guild in list(self.guilds):
            await self._check_guild(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._check_guild(guild)

    async def _check_guild(self, guild: discord.Guild) -> None:
        """Log (once) a server outside ALLOWED_GUILDS, and leave it when LEAVE_UNLISTED_GUILDS says so."""
        if self.gate.allows(guild.id):
            return
        self.gate.refuse(guild.id, guild.name)
        if self.settings.leave_unlisted_guilds:
            try:
                await guild.leave()
                log.warning("left server %s (%s): not in ALLOWED_GUILDS", guild.id, guild.name)
            except discord.HTTPException as e:
                log.warning("could not leave server %s: %s", guild.id, e)

    async def close(self) -> None:
        if not self._closing_started:
            self._closing_started = True
            await self.jobs.shutdown(self.settings.shutdown_timeout)
        # discord.py 2.7 leaves its "wait for guilds, then dispatch ready" task running on close; when the
        # bot stops within guild_ready_timeout of READY, it later dispatches on a closed client and logs
        # an AttributeError. Nothing is waiting for that ready any more.
        ready_task = getattr(self._connection, "_ready_task", None)
        if ready_task is not None:
            ready_task.cancel()
        await super().close()


def _configure_logging(level: int) -> None:
    # discord.py colours its log inside Docker even when it goes to a file; colour only a terminal.
    if sys.stderr.isatty():
        discord.utils.setup_logging(level=level, root=True)
    else:
        plain = logging.Formatter("{asctime} {levelname:<8} {name}: {message}", style="{")
        discord.utils.setup_logging(level=level, root=True, formatter=plain)


def build_engine(settings: BotSettings, engine_settings: EngineSettings | None) -> ImageEngine:
    """The engine ``ENGINE_BACKEND`` names. Raises ImportError (ray) when the cluster client is not installed."""
    if settings.engine_backend == "ray":
        assert settings.engine_url is not None  # BotSettings refuses ray without ENGINE_URL
        # Imported here: only owners who chose the cluster install its client (the [ray] extra).
        from engine.cluster.client import ClusterEngine

        token = settings.engine_token.get_secret_value() if settings.engine_token is not None else None
        return ClusterEngine(settings.engine_url, token)
    from engine.local import LocalEngine  # torch loads in LocalEngine.start(), not at import

    assert engine_settings is not None
    return LocalEngine(engine_settings)


async def _run(settings: BotSettings, engine: ImageEngine) -> int:
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        store = await HistoryStore.open(settings.database_path)
    except HistoryError as e:
        log.error("cannot open the history database %s: %s", settings.database_path, e)
        return EXIT_FAILURE

    bot: ImagineBot | None = None
    run_log = RunLog()
    try:
        run_log = await asyncio.to_thread(open_run_log, settings.wandb_project)  # one warning line if unusable
        await engine.start()
        log.info("image engine: %s", engine.offer.backend)
        bot = ImagineBot(settings=settings, store=store, engine=engine, run_log=run_log)
        stop = asyncio.Event()
        _on_stop_signals(asyncio.get_running_loop(), stop)

        async with bot:
            runner = asyncio.create_task(bot.start(settings.token.get_secret_value()), name="discord")
            stopper = asyncio.create_task(stop.wait(), name="signals")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("signal received: shutting down")
                await bot.close()
            else:
                stopper.cancel()
            try:
                await runner
            except discord.LoginFailure:
                log.error(
                    "Discord refused DISCORD_TOKEN: reset it at https://discord.com/developers/applications "
                    "-> your app -> Bot -> Reset Token, and put the new one in .env."
                )
                return EXIT_CONFIG
            except (aiohttp.ClientError, OSError) as e:
                log.error("cannot reach Discord at %s: %s", discord.http.Route.BASE, e)
                return EXIT_FAILURE
            except discord.PrivilegedIntentsRequired:
                log.error(
                    "Discord refused the Message Content intent: enable it at https://discord.com/developers/"
                    "applications -> your app -> Bot -> Message Content Intent, or set DISCORD_MESSAGE_CONTENT=false "
                    "(image channels then stop working)."
                )
                return EXIT_CONFIG
        return 0
    finally:
        if bot is None or not bot._closing_started:
            await engine.close(0.0)
        await _finish_event_handlers(timeout=5.0)
        await store.close()
        log.info("history database closed")
        if run_log.enabled:
            await asyncio.to_thread(run_log.close)


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; where the loop cannot watch signals (Windows), ``signal.signal`` does."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:
            signal.signal(sig, lambda _sig, _frame: loop.call_soon_threadsafe(stop.set))


async def _finish_event_handlers(timeout: float) -> None:
    """Let listeners that were already running (a reaction, a button) finish before the store closes.

    discord.py runs each event in a task of its own; once the gateway is closed no new ones start.
    """
    handlers = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and task.get_name().startswith("discord.py: ")
    ]
    if handlers:
        _, pending = await asyncio.wait(handlers, timeout=timeout)
        if pending:
            log.warning("%d event handler(s) still running after %.0f s; closing anyway", len(pending), timeout)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bot.py",
        description="The imagine-bot: a self-hosted Discord bot that draws SDXL images on this machine's GPU. "
        "Without options it starts the bot (settings from the environment and .env, see .env.example; the "
        "weights the settings name are downloaded once) and runs until SIGTERM or Ctrl+C.",
        epilog="Exit status: 0 after a clean stop, 2 for a settings problem (one line says which), 1 otherwise.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the settings, the token and the Message Content intent with Discord, torch and the GPU, "
        "the weights on disk and the free disk, without downloading or starting anything; exit 0 when the bot "
        "can start, 2 when not (one line per problem)",
    )
    parser.add_argument(
        "--backup",
        metavar="DIR",
        type=Path,
        help="copy the history database (DATABASE_PATH, consistently, while the bot runs) and its stored images "
        "into DIR, then exit; to restore, point DATABASE_PATH at the copy",
    )
    return add_purge_argument(parser).parse_args(argv)


def run_backup(directory: Path) -> int:
    """``--backup DIR``: needs only DATABASE_PATH (no token), takes no bot lock."""
    try:
        for line in backup_all(configured_database(), directory):
            print(line)
    except BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def run_check(settings: BotSettings, engine_settings: EngineSettings | None) -> int:
    """``--check``: one line per finding, ``problem:`` before those that stop the bot; 2 when there is one."""
    from core.doctor import Finding, discord_findings

    findings: list[Finding] = []
    try:
        lock_database(settings.database_path).release()
    except DatabaseInUse as e:
        findings.append(Finding(str(e), problem=True))
    apply_endpoints(settings)
    findings += asyncio.run(discord_findings(settings))
    if engine_settings is not None:
        from engine.doctor import machine_findings

        findings += [Finding(f.text, f.problem) for f in machine_findings(engine_settings)]
    else:
        findings.append(Finding(f"engine: the Ray Serve cluster at {settings.engine_url} (not checked from here)"))
    for finding in findings:
        print(f"problem: {finding.text}" if finding.problem else finding.text, flush=True)
    return EXIT_CONFIG if any(f.problem for f in findings) else 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    load_dotenv(".env", override=False)  # .env in the directory the bot starts from; the environment wins
    if arguments.backup is not None:
        return run_backup(arguments.backup)
    if arguments.purge_user is not None:  # the owner forgets a member (core.forget); refused while the bot runs
        return purge_user(configured_database(), arguments.purge_user)
    try:
        settings = BotSettings.from_env()
        # The cluster reads its own engine settings where it runs; here only the local engine needs them.
        engine_settings = EngineSettings.from_env() if settings.engine_backend == "local" else None
    except SettingsError as e:  # the bot's, the engine's: one class
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if arguments.check:
        return run_check(settings, engine_settings)
    try:
        lock = lock_database(settings.database_path)  # before any download: a second bot stops here
    except DatabaseInUse as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _start(settings, engine_settings)
    finally:
        lock.release()


def draft_licence_warning(engine_settings: EngineSettings | None) -> str | None:
    """One line when the local engine drafts with SDXL Turbo (the hub id or a folder named after it)."""
    if engine_settings is None or "sdxl-turbo" not in engine_settings.turbo_model.lower():
        return None
    return TURBO_LICENCE_WARNING.format(model=engine_settings.turbo_model)


def _start(settings: BotSettings, engine_settings: EngineSettings | None) -> int:
    _configure_logging(settings.log_level_number)
    warning = draft_licence_warning(engine_settings)
    if warning is not None:
        log.warning(warning)
    try:
        engine = build_engine(settings, engine_settings)
    except ImportError as e:
        if settings.engine_backend != "ray":
            raise
        log.debug("cluster client import failed", exc_info=e)
        print(f"error: {RAY_CLIENT_MISSING}", file=sys.stderr)
        return EXIT_CONFIG
    if engine_settings is not None:
        from engine.local import fetch_missing_weights

        if not fetch_missing_weights(engine_settings):
            return EXIT_FAILURE
    apply_endpoints(settings)
    return asyncio.run(_run(settings, engine))


if __name__ == "__main__":
    sys.exit(main())
