-- Number reserved for a migration developed on another branch; this file
-- only keeps the sequence without gaps until the branches are merged.
SELECT 1;
