-- 0006: Vary (subtle/strong) gets its own mode, "vary". Until now it shared "variation" with V1-V4.
-- A Vary result is the only final stored as "variation" (V1-V4 make drafts), so kind tells them apart.
-- Nothing else changes: its params (vary, init_result) rebuild the same request as before.
UPDATE jobs SET mode = 'vary' WHERE mode = 'variation' AND kind = 'final';
