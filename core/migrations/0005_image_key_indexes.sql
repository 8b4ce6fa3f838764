-- 0005: find the rows that name a stored image (HistoryStore.image_in_use, asked on every release of
-- a refused or cancelled job's images) through an index per params key instead of a scan of all jobs.
-- Partial: only rows that have the key are in each index; "json_extract(...) = ?" implies NOT NULL,
-- so SQLite uses them (MULTI-INDEX OR over the three).
CREATE INDEX jobs_by_init_image ON jobs (json_extract(params, '$.init_image'))
    WHERE json_extract(params, '$.init_image') IS NOT NULL;
CREATE INDEX jobs_by_mask_image ON jobs (json_extract(params, '$.mask_image'))
    WHERE json_extract(params, '$.mask_image') IS NOT NULL;
CREATE INDEX jobs_by_reference_image ON jobs (json_extract(params, '$.reference_image'))
    WHERE json_extract(params, '$.reference_image') IS NOT NULL;
