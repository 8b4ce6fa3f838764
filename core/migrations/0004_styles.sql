-- 0004: style presets per server (/settings style add/remove), keyed by (guild_id, name).
-- The bot's own defaults live in core.styles.DEFAULT_STYLES, not here. A row with a default's name
-- replaces that default in its server; a row with hidden = 1 removes it there (its texts are unused).
-- Names are stored as checked by core.styles.check_style_name (lower case, at most 50 characters).
CREATE TABLE guild_styles (
    guild_id        INTEGER NOT NULL,
    name            TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 50),
    prompt_suffix   TEXT    NOT NULL DEFAULT '',
    negative_prompt TEXT    NOT NULL DEFAULT '',
    hidden          INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
    PRIMARY KEY (guild_id, name)
) WITHOUT ROWID;
