-- Interaction tokens are credentials for 15 minutes; the store clears them once expired
-- (HistoryStore.clear_expired_tokens). This index finds the ones still stored.
CREATE INDEX jobs_with_token ON jobs (interaction_expires_at) WHERE interaction_token IS NOT NULL;
