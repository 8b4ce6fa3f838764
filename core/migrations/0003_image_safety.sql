-- The image safety check per server: 'off', 'spoiler' (results flagged by the detector are posted as
-- spoilers) or 'block' (they are not posted), for channels that are not age-restricted.
-- It replaces the check_images flag, which nothing read; a server that had it on gets 'spoiler'.
ALTER TABLE guild_settings ADD COLUMN image_safety TEXT NOT NULL DEFAULT 'off'
    CHECK (image_safety IN ('off', 'spoiler', 'block'));
UPDATE guild_settings SET image_safety = 'spoiler' WHERE check_images = 1;
ALTER TABLE guild_settings DROP COLUMN check_images;
