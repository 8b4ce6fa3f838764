-- 0001: jobs (one row per generation request), guild settings, image channels, user preferences.
-- Applied by core.history.HistoryStore in one transaction together with PRAGMA user_version = 1.
-- Times are unix seconds (UTC) as REAL. JSON columns hold text written by json.dumps.

CREATE TABLE jobs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                   TEXT    NOT NULL CHECK (kind IN ('draft', 'final')),
    mode                   TEXT    NOT NULL,
    parent_id              INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    parent_index           INTEGER CHECK (parent_index IS NULL OR parent_index >= 0),
    guild_id               INTEGER,
    channel_id             INTEGER NOT NULL,
    user_id                INTEGER NOT NULL,
    prompt                 TEXT    NOT NULL,
    -- casefold() of prompt, written by the store, for case-insensitive search beyond ASCII
    prompt_folded          TEXT    NOT NULL,
    negative_prompt        TEXT    NOT NULL DEFAULT '',
    model                  TEXT    NOT NULL,
    width                  INTEGER NOT NULL,
    height                 INTEGER NOT NULL,
    steps                  INTEGER,
    guidance               REAL,
    seed                   INTEGER NOT NULL,
    count                  INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    strength               REAL,
    params                 TEXT    NOT NULL DEFAULT '{}',   -- JSON object
    status                 TEXT    NOT NULL DEFAULT 'queued'
                                   CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    error                  TEXT,
    seeds                  TEXT    NOT NULL DEFAULT '[]',   -- JSON list of ints
    timings                TEXT    NOT NULL DEFAULT '{}',   -- JSON object, seconds by phase
    created_at             REAL    NOT NULL,
    started_at             REAL,
    finished_at            REAL,
    source_message_id      INTEGER,
    interaction_token      TEXT,
    interaction_expires_at REAL,
    result_channel_id      INTEGER,
    result_message_id      INTEGER,
    favorite               INTEGER NOT NULL DEFAULT 0 CHECK (favorite IN (0, 1))
);

-- Reactions and buttons find their job by the message that shows its result.
CREATE INDEX jobs_by_result_message ON jobs (result_message_id);
-- /history of one user, newest first; also the per-user rate limit (created since).
CREATE INDEX jobs_by_user_created ON jobs (user_id, created_at);
-- /history of a whole guild, newest first.
CREATE INDEX jobs_by_guild_created ON jobs (guild_id, created_at);
-- Restart recovery and waiting counts: only the queued/running jobs, oldest first. Partial, so it
-- stays small; a query uses it when its WHERE has this exact term: status IN ('queued', 'running').
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_unfinished_by_user ON jobs (user_id) WHERE status IN ('queued', 'running');

-- One row per guild that changed a setting; the defaults live in core.history.GuildSettings.
CREATE TABLE guild_settings (
    guild_id             INTEGER PRIMARY KEY,
    max_waiting_per_user INTEGER NOT NULL CHECK (max_waiting_per_user >= 0),
    max_jobs_per_minute  INTEGER NOT NULL CHECK (max_jobs_per_minute >= 0),
    finals_outside_nsfw  INTEGER NOT NULL CHECK (finals_outside_nsfw IN (0, 1)),
    blocked_words        TEXT    NOT NULL,   -- JSON list of strings
    check_images         INTEGER NOT NULL CHECK (check_images IN (0, 1))
);

-- Channels where a plain message is a prompt.
CREATE TABLE image_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

-- One row per user that changed a preference; the defaults live in core.history.UserPrefs.
CREATE TABLE user_prefs (
    user_id         INTEGER PRIMARY KEY,
    aspect          TEXT,
    negative_prompt TEXT,
    style_suffix    TEXT,
    final_model     TEXT,
    dm_results      INTEGER NOT NULL CHECK (dm_results IN (0, 1))
);
