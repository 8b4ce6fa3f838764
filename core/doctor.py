"""What ``python bot.py --check`` asks Discord: is the token accepted, is the Message Content intent on,
the invite URL with the real application id, and whether anyone may add the bot (Public Bot, no allowlist).

A login-only call (``Client.login``: ``GET /users/@me`` and the application's info), no gateway, nothing sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import discord
import discord.http

from core.settings import BotSettings

# View Channels, Send Messages, Attach Files, Read Message History, Add Reactions (the README's set-up).
INVITE_PERMISSIONS = discord.Permissions(109632)


@dataclass(frozen=True)
class Finding:
    text: str
    problem: bool = False


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )


async def discord_findings(settings: BotSettings) -> list[Finding]:
    client = discord.Client(intents=discord.Intents.none())
    try:
        await client.login(settings.token.get_secret_value())
        info = await client.application_info()
    except discord.LoginFailure:
        return [
            Finding(
                "Discord refused DISCORD_TOKEN: reset it at https://discord.com/developers/applications -> your app "
                "-> Bot -> Reset Token, and put the new one in .env",
                problem=True,
            )
        ]
    except (aiohttp.ClientError, OSError, discord.HTTPException) as e:
        return [Finding(f"cannot reach Discord at {discord.http.Route.BASE}: {e}", problem=True)]
    finally:
        await client.close()
    findings = [Finding(f"token accepted: the bot is {client.user} (application id {info.id})")]
    flags = info.flags
    if not settings.message_content:
        findings.append(Finding("Message Content intent: not asked for (DISCORD_MESSAGE_CONTENT=false)"))
    elif flags.gateway_message_content or flags.gateway_message_content_limited:
        findings.append(Finding("Message Content intent: enabled"))
    else:
        findings.append(
            Finding(
                "the Message Content intent is off: enable it at https://discord.com/developers/applications -> "
                "your app -> Bot -> Message Content Intent, or set DISCORD_MESSAGE_CONTENT=false",
                problem=True,
            )
        )
    findings.append(Finding(f"invite URL: {invite_url(info.id)}"))
    if info.bot_public and not settings.allowed_guilds:
        findings.append(
            Finding(
                "warning: the bot is public and ALLOWED_GUILDS is empty: anyone with the invite link can add it and "
                "use your GPU (see the README: Public Bot off, ALLOWED_GUILDS)"
            )
        )
    elif settings.allowed_guilds:
        findings.append(Finding(f"serves only ALLOWED_GUILDS: {', '.join(map(str, sorted(settings.allowed_guilds)))}"))
    return findings
