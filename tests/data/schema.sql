CREATE TABLE "_migrations" (
   "name" TEXT PRIMARY KEY,
   "applied_at" TEXT
);
CREATE TABLE "adapters" (
   "id" INTEGER PRIMARY KEY,
   "handle" TEXT REFERENCES "characters"("handle"),
   "path" TEXT,
   "sha256" TEXT,
   "base" TEXT,
   "trigger" TEXT,
   "weight" REAL,
   "rank" INTEGER,
   "added_at" TEXT
, "name" TEXT, "steps" INTEGER);
CREATE TABLE "character_scores" (
   "id" INTEGER PRIMARY KEY,
   "take_id" INTEGER REFERENCES "takes"("id"),
   "handle" TEXT,
   "encoder" TEXT,
   "bound" REAL,
   "frames_scored" INTEGER,
   "frames_missing" INTEGER,
   "frames_drifted" INTEGER,
   "mean" REAL,
   "min" REAL,
   "p5" REAL
, "centroid_mean" REAL, "subject_consistency" REAL, "bound_source" TEXT, "mode" TEXT, "mean_vector" TEXT);
CREATE TABLE "characters" (
   "handle" TEXT PRIMARY KEY,
   "name" TEXT,
   "kind" TEXT,
   "description" TEXT,
   "consent" TEXT,
   "licence" TEXT,
   "created_at" TEXT
);
CREATE TABLE "check_cache" (
   "sha256" TEXT,
   "encoder" TEXT,
   "encoder_version" TEXT,
   "params" TEXT,
   "frames" INTEGER,
   "flicker" REAL,
   "observations" TEXT,
   "created_at" TEXT,
   PRIMARY KEY ("sha256", "encoder", "encoder_version", "params")
);
CREATE TABLE "cohort" (
   "encoder" TEXT,
   "encoder_version" TEXT,
   "source" TEXT,
   "face" INTEGER,
   "vector" BLOB,
   "created_at" TEXT,
   PRIMARY KEY ("encoder", "encoder_version", "source", "face")
);
CREATE TABLE "embeddings" (
   "id" INTEGER PRIMARY KEY,
   "handle" TEXT REFERENCES "characters"("handle"),
   "photo_id" INTEGER REFERENCES "photos"("id"),
   "encoder" TEXT,
   "encoder_version" TEXT,
   "licence" TEXT,
   "dim" INTEGER,
   "box" TEXT,
   "score" REAL,
   "vector" BLOB,
   "created_at" TEXT
);
CREATE TABLE "episodes" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "series" TEXT,
   "episode_id" TEXT,
   "path" TEXT,
   "duration" REAL,
   "frames" INTEGER,
   "shots_used" TEXT,
   "shots_rejected" TEXT,
   "created_at" TEXT
, "contact_sheet" TEXT, "signed" INTEGER, "key" TEXT, "reused" INTEGER);
CREATE TABLE "frame_scores" (
   "take_id" INTEGER REFERENCES "takes"("id"),
   "frame" INTEGER,
   "time" REAL,
   "handle" TEXT,
   "encoder" TEXT,
   "similarity" REAL,
   "box" TEXT,
   "drifted" INTEGER
, "centroid" REAL, "source" TEXT);
CREATE TABLE "identity" (
   "handle" TEXT REFERENCES "characters"("handle"),
   "encoder" TEXT,
   "encoder_version" TEXT,
   "n" INTEGER,
   "dim" INTEGER,
   "centroid" BLOB,
   "max_distance" REAL,
   "mean_distance" REAL,
   "bound" REAL,
   "bound_source" TEXT,
   "updated_at" TEXT,
   PRIMARY KEY ("handle", "encoder", "encoder_version")
);
CREATE INDEX "idx_character_scores_take_id"
    ON "character_scores" ("take_id");
CREATE INDEX "idx_embeddings_handle_encoder_encoder_version"
    ON "embeddings" ("handle", "encoder", "encoder_version");
CREATE INDEX "idx_embeddings_photo_id"
    ON "embeddings" ("photo_id");
CREATE INDEX "idx_frame_scores_take_id"
    ON "frame_scores" ("take_id");
CREATE INDEX "idx_photos_handle"
    ON "photos" ("handle");
CREATE INDEX "idx_photos_sha256"
    ON "photos" ("sha256");
CREATE INDEX "idx_take_decisions_series_shot_id"
    ON "take_decisions" ("series", "shot_id");
CREATE INDEX "idx_takes_cache_key"
    ON "takes" ("cache_key");
CREATE INDEX "idx_takes_series_shot_id"
    ON "takes" ("series", "shot_id");
CREATE TABLE "photos" (
   "id" INTEGER PRIMARY KEY,
   "handle" TEXT REFERENCES "characters"("handle"),
   "sha256" TEXT,
   "path" TEXT,
   "source" TEXT,
   "width" INTEGER,
   "height" INTEGER,
   "phash" TEXT,
   "consent" TEXT,
   "licence" TEXT,
   "added_at" TEXT
);
CREATE TABLE "runs" (
   "id" INTEGER PRIMARY KEY,
   "series" TEXT,
   "spec_path" TEXT,
   "backend" TEXT,
   "settings" TEXT,
   "started_at" TEXT,
   "finished_at" TEXT,
   "status" TEXT
);
CREATE TABLE "take_decisions" (
   "id" INTEGER PRIMARY KEY,
   "series" TEXT,
   "shot_id" TEXT,
   "take" INTEGER,
   "action" TEXT,
   "reason" TEXT,
   "cache_key" TEXT,
   "created_at" TEXT
);
CREATE TABLE "takes" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "series" TEXT,
   "episode_id" TEXT,
   "shot_id" TEXT,
   "take" INTEGER,
   "seed" INTEGER,
   "backend" TEXT,
   "path" TEXT,
   "num_frames" INTEGER,
   "fps" INTEGER,
   "mode" TEXT,
   "decision" TEXT,
   "reason" TEXT,
   "keep_start" INTEGER,
   "keep_end" INTEGER,
   "conditioning" TEXT,
   "created_at" TEXT
, "flicker" REAL, "findings" TEXT, "mood" TEXT, "used" INTEGER, "cache_key" TEXT, "generated" INTEGER, "human" TEXT);
