"""Image channels: every plain message there is a prompt, and the drafts come back as a reply.

A prompt with an image attached borrows from the (first) image as its image reference, as /imagine's
``reference`` option does (``--iw``, ``--sref`` and ``--lora`` in the text pick the rest).
Reading messages needs the privileged Message Content intent (Developer Portal -> Bot ->
Message Content Intent); without it Discord sends empty text and nothing happens here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from cogs.attachments import read_image, upload_turn
from core.jobs.addons import NO_REFERENCE, Addons
from core.limits import Refusal
from core.origins import MessageOrigin, age_restricted

if TYPE_CHECKING:
    from bot import ImagineBot

log = logging.getLogger(__name__)

PLAIN_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
IMAGE_ALONE = "In this channel I draw from text: write what you want to see. Images alone aren't used."
WITH_REFERENCE = " A prompt with the image attached uses it as the image reference."


class ImageChannelsCog(commands.Cog):
    """Prompts as plain messages in the channels a server chose."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or message.author.bot or message.webhook_id is not None:
            return
        if message.type not in PLAIN_MESSAGE_TYPES:
            return
        jobs = self.bot.jobs
        settings = await jobs.guilds.get(message.guild.id)
        if message.channel.id not in settings.image_channels:
            return

        channel = message.channel
        origin = MessageOrigin(
            self.bot,
            channel_id=channel.id,
            guild_id=message.guild.id,
            user_id=message.author.id,
            source_message_id=message.id,
            age_restricted=age_restricted(channel),
        )
        me = message.guild.me
        if me is not None and isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            permissions = channel.permissions_for(me)
            if not permissions.send_messages:
                log.warning("image channel %s: I may not send messages there; ignoring prompts", channel.id)
                return
            if not permissions.attach_files:
                await origin.refuse("I can't attach images in this channel (missing Attach Files); ask a moderator.")
                return

        prompt = message.clean_content
        if not prompt.strip():
            if message.attachments or message.stickers:
                await origin.refuse(IMAGE_ALONE + (WITH_REFERENCE if jobs.engine.offer.reference else ""))
            return
        reference = None
        if message.attachments:
            if not jobs.engine.offer.reference:
                await origin.refuse(f"{NO_REFERENCE} Send the prompt without the image.")
                return
            try:
                async with upload_turn(jobs, origin):  # the member's limits before any download or decoding
                    reference = await read_image(message.attachments[0], what="reference image", jobs=jobs)
            except Refusal as r:
                await origin.refuse(str(r))
                return
        await jobs.imagine(origin, prompt=prompt, addons=Addons(reference=reference))


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(ImageChannelsCog(bot))
