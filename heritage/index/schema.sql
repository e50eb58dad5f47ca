-- Model Heritage index schema. Executed by heritage.index.store on a fresh DuckDB file.
-- Every table, column, view and macro carries a COMMENT so `duckdb_columns()` documents
-- the index from inside SQL. Bump heritage.index.store.SCHEMA_VERSION on any change.
-- A StrEnum name of heritage.lineage.types in braces (Relation, Direction) stands for its
-- values, quoted and comma-separated; with .text after the name, for the values as prose.
-- heritage.index.frames.schema_sql fills them in, so the enums alone decide which
-- relations and directions an edge may have.

CREATE TABLE models (
    model_id VARCHAR PRIMARY KEY,
    name VARCHAR,
    source VARCHAR CHECK (source IN ('local', 'hub')),
    location VARCHAR,
    revision VARCHAR,
    format VARCHAR,
    files STRUCT(name VARCHAR, bytes BIGINT, sha256 VARCHAR, mtime DOUBLE)[],
    bytes BIGINT,
    sha256 VARCHAR,
    n_params BIGINT,
    n_tensors INTEGER,
    n_layers INTEGER,
    dtypes VARCHAR[],
    structure_hash VARCHAR,
    family_id VARCHAR,
    description VARCHAR,
    declared_base_models VARCHAR[],
    created_at TIMESTAMP,
    indexed_at TIMESTAMP,
    status VARCHAR CHECK (status IN ('ok', 'failed', 'not_fingerprinted')),
    error VARCHAR,
    config JSON,
    card JSON,
    private BOOLEAN DEFAULT false,
    gated BOOLEAN DEFAULT false
);

COMMENT ON TABLE models IS 'One row per model seen by a crawl: where it lives, what it holds, its family and status.';
COMMENT ON COLUMN models.model_id IS 'Stable identifier of the model inside this index (primary key).';
COMMENT ON COLUMN models.name IS 'Human name: the Hub repo id (with the subfolder or GGUF file for a model inside a repo), or for a local model the name its card gives, else its location.';
COMMENT ON COLUMN models.source IS 'Where the model was found: ''local'' (a crawled folder) or ''hub'' (Hugging Face Hub).';
COMMENT ON COLUMN models.location IS 'Path relative to the crawl root for local models; Hub repo id for Hub models, with the subfolder or GGUF file for a model inside a repo.';
COMMENT ON COLUMN models.revision IS 'Hub commit sha that was read (the repo is pinned to it); NULL for local models.';
COMMENT ON COLUMN models.format IS 'Checkpoint format: safetensors, safetensors-sharded, pytorch-zip, pytorch-legacy, gguf, or peft-lora (a PEFT LoRA adapter folder: adapter_config.json and its adapter weights).';
COMMENT ON COLUMN models.files IS 'Weight files: name, size in bytes, sha256 (NULL if not hashed) and mtime (seconds since the epoch).';
COMMENT ON COLUMN models.bytes IS 'Total size of the weight files in bytes.';
COMMENT ON COLUMN models.sha256 IS 'sha256 of the single weight file, or sha256 over the sorted per-file sha256 hex digests joined by newlines.';
COMMENT ON COLUMN models.n_params IS 'Number of parameters (sum of tensor element counts).';
COMMENT ON COLUMN models.n_tensors IS 'Number of tensors in the checkpoint.';
COMMENT ON COLUMN models.n_layers IS 'Number of distinct transformer blocks found in tensor names (0 if none).';
COMMENT ON COLUMN models.dtypes IS 'Sorted distinct tensor dtypes, e.g. [BF16, F32].';
COMMENT ON COLUMN models.structure_hash IS 'sha256 over the sorted (tensor name, shape) list: equal for equal architectures whatever dtype or sharding.';
COMMENT ON COLUMN models.family_id IS 'Family this model was placed in by lineage recovery (families.family_id); NULL if not fingerprinted.';
COMMENT ON COLUMN models.description IS 'Short free-text description, e.g. from the model card.';
COMMENT ON COLUMN models.declared_base_models IS 'Base models the card or config declares (Hub repo ids or names); evidence only, never used to infer lineage.';
COMMENT ON COLUMN models.created_at IS 'When the Hub repo was created, UTC; NULL for local models (file times are not evidence of when a model was made).';
COMMENT ON COLUMN models.indexed_at IS 'When this row was last (re)computed, UTC.';
COMMENT ON COLUMN models.status IS '''ok'' (fingerprinted), ''failed'' (could not be read, see error) or ''not_fingerprinted'' (listed only).';
COMMENT ON COLUMN models.error IS 'One-line reason when status is ''failed'' (PATH: reason) or ''not_fingerprinted''.';
COMMENT ON COLUMN models.config IS 'The model''s config.json as JSON, if any; a PEFT adapter''s adapter_config.json.';
COMMENT ON COLUMN models.card IS 'Model card metadata as JSON: license, tags, base_model_relation and similar.';
COMMENT ON COLUMN models.private IS 'True when the Hub repo is private.';
COMMENT ON COLUMN models.gated IS 'True when the Hub repo is gated (access must be requested).';

CREATE TABLE tensors (
    model_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    position INTEGER,
    dtype VARCHAR,
    shape INTEGER[],
    n_params BIGINT,
    mean DOUBLE,
    std DOUBLE,
    kurtosis DOUBLE,
    rms DOUBLE,
    absmax DOUBLE,
    unique_ratio DOUBLE,
    PRIMARY KEY (model_id, name)
);

COMMENT ON TABLE tensors IS 'One row per tensor of each fingerprinted model, with statistics of its sampled entries.';
COMMENT ON COLUMN tensors.model_id IS 'Model the tensor belongs to (models.model_id).';
COMMENT ON COLUMN tensors.name IS 'Tensor name as stored in the checkpoint.';
COMMENT ON COLUMN tensors.position IS 'Position of the tensor in the model''s fingerprint listing (0-based).';
COMMENT ON COLUMN tensors.dtype IS 'Stored dtype, e.g. BF16, F32, I8; a GGML type (Q4_K) for GGUF; for a quantized layer read as its logical weight, the method and bits (GPTQ_INT4, AWQ_INT4, BNB_INT8, BNB_NF4, ...).';
COMMENT ON COLUMN tensors.shape IS 'Tensor shape; [] for a scalar.';
COMMENT ON COLUMN tensors.n_params IS 'Number of elements (product of the shape).';
COMMENT ON COLUMN tensors.mean IS 'Mean of the sampled entries (finite values only).';
COMMENT ON COLUMN tensors.std IS 'Standard deviation of the sampled entries.';
COMMENT ON COLUMN tensors.kurtosis IS 'Excess kurtosis of the sampled entries (0 for a normal distribution).';
COMMENT ON COLUMN tensors.rms IS 'Root mean square of the sampled entries.';
COMMENT ON COLUMN tensors.absmax IS 'Largest absolute sampled entry.';
COMMENT ON COLUMN tensors.unique_ratio IS 'Distinct sampled values / sampled values: low for quantized or constant tensors.';

CREATE TABLE fingerprints (
    model_id VARCHAR NOT NULL,
    tensor VARCHAR NOT NULL,
    position INTEGER,
    dtype VARCHAR,
    shape INTEGER[],
    rows BIGINT[],
    col_start INTEGER,
    col_stop INTEGER,
    n_rows INTEGER,
    n_cols INTEGER,
    "values" BLOB,
    sample_rows INTEGER,
    sample_cols INTEGER,
    PRIMARY KEY (model_id, tensor)
);

COMMENT ON TABLE fingerprints IS 'The sampled weights of every tensor: enough to recompute lineage without rereading any checkpoint.';
COMMENT ON COLUMN fingerprints.model_id IS 'Model the fingerprint belongs to (models.model_id).';
COMMENT ON COLUMN fingerprints.tensor IS 'Tensor name (tensors.name).';
COMMENT ON COLUMN fingerprints.position IS 'Position of the tensor in the fingerprint (0-based), so the listing order round-trips.';
COMMENT ON COLUMN fingerprints.dtype IS 'Stored dtype of the tensor the sample was read from.';
COMMENT ON COLUMN fingerprints.shape IS 'Full shape of the tensor; [] for a scalar.';
COMMENT ON COLUMN fingerprints.rows IS 'Sorted indices of the sampled rows (first axis); [0] for vectors and scalars.';
COMMENT ON COLUMN fingerprints.col_start IS 'First sampled column of the flattened row (inclusive).';
COMMENT ON COLUMN fingerprints.col_stop IS 'End of the sampled column window of the flattened row (exclusive).';
COMMENT ON COLUMN fingerprints.n_rows IS 'Rows in the values matrix (number of sampled rows).';
COMMENT ON COLUMN fingerprints.n_cols IS 'Columns in the values matrix.';
COMMENT ON COLUMN fingerprints."values" IS 'Sampled values: float32 little-endian bytes of the (n_rows, n_cols) matrix, row-major. Quote the name in SQL: values is a keyword.';
COMMENT ON COLUMN fingerprints.sample_rows IS 'Fingerprint setting: rows sampled per tensor (FingerprintSettings.rows).';
COMMENT ON COLUMN fingerprints.sample_cols IS 'Fingerprint setting: column window width (FingerprintSettings.cols).';

CREATE TABLE families (
    family_id VARCHAR PRIMARY KEY,
    architecture VARCHAR,
    n_models INTEGER,
    root_model_id VARCHAR,
    confidence DOUBLE,
    root_confidence DOUBLE
);

COMMENT ON TABLE families IS 'Groups of models that share trained weights (one common ancestor), as recovered from weights.';
COMMENT ON COLUMN families.family_id IS 'Family identifier (primary key), derived from its member ids (PEFT adapters aside: one joins its base''s family as it is).';
COMMENT ON COLUMN families.architecture IS 'Architecture key: hash of tensor names and row shapes shared by all members (PEFT adapters aside: they hold their base''s changes, not its tensors).';
COMMENT ON COLUMN families.n_models IS 'Number of member models, PEFT adapters attached to a member included.';
COMMENT ON COLUMN families.root_model_id IS 'Model inferred to be the family root (the original, untuned model).';
COMMENT ON COLUMN families.confidence IS 'Lowest member family_confidence in [0, 1]: how sure the least certain membership is (an adapter''s membership is its edge''s confidence, not counted here).';
COMMENT ON COLUMN families.root_confidence IS 'Confidence in [0, 1] that root_model_id is the true root; NULL if unknown; 0 for a PEFT adapter left unattached (alone in its family: its base is not known, but it is no root).';

CREATE TABLE edges (
    parent_id VARCHAR NOT NULL,
    child_id VARCHAR NOT NULL,
    relation VARCHAR CHECK (relation IN ({Relation})),
    direction VARCHAR NOT NULL CHECK (direction IN ({Direction})),
    confidence DOUBLE,
    distance DOUBLE,
    method VARCHAR,
    weight DOUBLE,
    verified BOOLEAN,
    PRIMARY KEY (parent_id, child_id)
);

COMMENT ON TABLE edges IS 'Inferred lineage: one row per parent -> child derivation.';
COMMENT ON COLUMN edges.parent_id IS 'The model derived from (models.model_id).';
COMMENT ON COLUMN edges.child_id IS 'The derived model (models.model_id).';
COMMENT ON COLUMN edges.relation IS 'How the child was derived: {Relation.text}.';
COMMENT ON COLUMN edges.direction IS '''inferred'' (the weights tell which end is the parent) or ''uncertain'' (the two are kin and adjacent, but the weights cannot tell which is the parent: parent_id and child_id may be swapped; confidence at most 0.6).';
COMMENT ON COLUMN edges.confidence IS 'Confidence in [0, 1] that this edge is right, and its orientation too when direction is ''inferred''.';
COMMENT ON COLUMN edges.distance IS 'Weight distance between parent and child fingerprints (0 for exact copies); for a PEFT adapter''s edge, the size of its update (scale * B @ A) relative to the parent''s sampled weights it changes.';
COMMENT ON COLUMN edges.method IS 'Algorithm and version that inferred the edge (heritage.lineage.METHOD, e.g. heritage-lineage/11); an index written by another version is planned again in full.';
COMMENT ON COLUMN edges.weight IS 'For merges: share of this parent in the child''s weighted average; NULL otherwise.';
COMMENT ON COLUMN edges.verified IS 'For quantized copies: true when rounding the parent''s sampled weights as the child stores them (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) reproduces the child exactly, a proof rather than an estimate (confidence 1.0); false when some block of the child lies further from the parent than one rounding step (an unfaithful copy: weights changed during quantization); NULL when neither could be shown or the edge is not a copy. For a PEFT adapter''s edge: true when a merged copy in the index equals the parent plus the adapter''s update on every sampled weight (confidence 1.0), NULL otherwise.';

CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    flow VARCHAR,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    source VARCHAR,
    n_seen INTEGER,
    n_added INTEGER,
    n_changed INTEGER,
    n_unchanged INTEGER,
    n_failed INTEGER,
    n_edges_changed INTEGER,
    bytes_read BIGINT,
    errors VARCHAR[],
    status VARCHAR
);

COMMENT ON TABLE runs IS 'History of the crawls and rebuilds that wrote this index, one row per run.';
COMMENT ON COLUMN runs.run_id IS 'Run identifier (primary key).';
COMMENT ON COLUMN runs.flow IS 'Name of the flow that ran: index-local or index-hub (the Prefect flows), index-local-plain or index-hub-plain (the same steps without Prefect: heritage index --no-prefect or when Prefect cannot start, heritage hub).';
COMMENT ON COLUMN runs.started_at IS 'When the run started, UTC.';
COMMENT ON COLUMN runs.finished_at IS 'When the run finished, UTC; NULL if it did not finish.';
COMMENT ON COLUMN runs.source IS 'What was crawled: a local root path or a Hub query.';
COMMENT ON COLUMN runs.n_seen IS 'Models seen by the run.';
COMMENT ON COLUMN runs.n_added IS 'Models new to the index.';
COMMENT ON COLUMN runs.n_changed IS 'Models whose files changed since the previous run.';
COMMENT ON COLUMN runs.n_unchanged IS 'Models skipped because nothing changed.';
COMMENT ON COLUMN runs.n_failed IS 'Models that could not be read.';
COMMENT ON COLUMN runs.n_edges_changed IS 'Lineage edges added, removed or changed by the run.';
COMMENT ON COLUMN runs.bytes_read IS 'Bytes read from checkpoints (headers and samples) by the run.';
COMMENT ON COLUMN runs.errors IS 'One-line error messages, one per failed model (PATH: reason).';
COMMENT ON COLUMN runs.status IS 'Outcome of the run: ok, partial (some models failed) or failed (no model could be read).';

CREATE TABLE meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);

COMMENT ON TABLE meta IS 'Facts about the index file itself: schema_version, tool_version, storage_version, written_at; local runs add local_roots and local_paths (absolute paths, to match models to the last run).';
COMMENT ON COLUMN meta.key IS 'Name of the fact.';
COMMENT ON COLUMN meta.value IS 'Value of the fact, as text.';

-- Ancestry walks. A model may be named by model_id, name or location. One row per edge
-- reached; depth counts hops from the start model along the shortest path through it.
CREATE MACRO ancestors(model) AS TABLE
    WITH RECURSIVE
        start AS (
            SELECT model AS model_id
            UNION
            SELECT model_id FROM models WHERE name = model OR location = model
        ),
        walk AS (
            SELECT e.parent_id, e.child_id, 1 AS depth, [e.child_id, e.parent_id] AS path
            FROM edges e JOIN start s ON e.child_id = s.model_id
            UNION ALL
            SELECT e.parent_id, e.child_id, w.depth + 1, list_append(w.path, e.parent_id)
            FROM walk w JOIN edges e ON e.child_id = w.parent_id
            WHERE NOT list_contains(w.path, e.parent_id)
        ),
        shortest AS (
            SELECT parent_id, child_id, min(depth) AS depth FROM walk GROUP BY parent_id, child_id
        )
    SELECT s.parent_id AS model_id, m.name, e.relation, s.depth, s.parent_id, s.child_id,
        e.confidence, e.weight, e.direction
    FROM shortest s
    JOIN edges e ON e.parent_id = s.parent_id AND e.child_id = s.child_id
    LEFT JOIN models m ON m.model_id = s.parent_id
    ORDER BY s.depth, s.parent_id, s.child_id;

CREATE MACRO descendants(model) AS TABLE
    WITH RECURSIVE
        start AS (
            SELECT model AS model_id
            UNION
            SELECT model_id FROM models WHERE name = model OR location = model
        ),
        walk AS (
            SELECT e.parent_id, e.child_id, 1 AS depth, [e.parent_id, e.child_id] AS path
            FROM edges e JOIN start s ON e.parent_id = s.model_id
            UNION ALL
            SELECT e.parent_id, e.child_id, w.depth + 1, list_append(w.path, e.child_id)
            FROM walk w JOIN edges e ON e.parent_id = w.child_id
            WHERE NOT list_contains(w.path, e.child_id)
        ),
        shortest AS (
            SELECT parent_id, child_id, min(depth) AS depth FROM walk GROUP BY parent_id, child_id
        )
    SELECT s.child_id AS model_id, m.name, e.relation, s.depth, s.parent_id, s.child_id,
        e.confidence, e.weight, e.direction
    FROM shortest s
    JOIN edges e ON e.parent_id = s.parent_id AND e.child_id = s.child_id
    LEFT JOIN models m ON m.model_id = s.child_id
    ORDER BY s.depth, s.child_id, s.parent_id;

COMMENT ON MACRO TABLE ancestors IS 'ancestors(model): every edge above a model (id, name or location), with depth = hops up; direction ''uncertain'' marks an edge the weights could not orient.';
COMMENT ON MACRO TABLE descendants IS 'descendants(model): every edge below a model (id, name or location), with depth = hops down; direction ''uncertain'' marks an edge the weights could not orient.';

-- Declared (card/config) base models next to the parents inferred from weights. A declared
-- base names an indexed model by model_id, name or location (case-insensitive, never the
-- model itself). The status is decided in this order: 'agrees' (a declared base is an
-- inferred parent), 'unknown_base' (no declared base is in the index), 'unverified' (this
-- model or every indexed declared base has no fingerprint, so the weights cannot tell);
-- then, for a PEFT LoRA adapter (format 'peft-lora'), 'compatible' (a fingerprinted
-- declared base has the shapes it needs, though another base or none was inferred) or
-- 'incompatible' (none has); for any other model 'disagrees' (the weights give another
-- parent, or none); 'proposed' when nothing is declared but a parent was inferred.
-- An adapter needs, for each lora pair (heritage.formats.peft), the base weight
-- <module>.weight at [out, in] ([in, out] with fan_in_fan_out), and any tensor it saves
-- whole at that tensor's shape where the base has it (a head it adds, the base may lack).
-- heritage/publish/data.py:agreement mirrors this.
CREATE VIEW declared_vs_inferred AS
    WITH
        parents AS (
            SELECT e.child_id AS model_id,
                list(coalesce(p.name, e.parent_id) ORDER BY e.parent_id) AS inferred_parents,
                list(e.parent_id ORDER BY e.parent_id) AS inferred_parent_ids,
                list(e.relation ORDER BY e.parent_id) AS relations,
                list(e.direction ORDER BY e.parent_id) AS directions
            FROM edges e LEFT JOIN models p ON p.model_id = e.parent_id
            GROUP BY e.child_id
        ),
        best AS (
            SELECT e.child_id AS model_id, e.parent_id, coalesce(p.name, e.parent_id) AS name,
                e.relation, e.direction, e.confidence,
                row_number() OVER (
                    PARTITION BY e.child_id
                    ORDER BY e.confidence DESC NULLS LAST, coalesce(p.name, e.parent_id), e.parent_id
                ) AS rank
            FROM edges e LEFT JOIN models p ON p.model_id = e.parent_id
        ),
        declared AS (
            SELECT model_id, unnest(declared_base_models) AS base FROM models
        ),
        known AS (
            SELECT d.model_id, list(DISTINCT b.model_id ORDER BY b.model_id) AS base_ids,
                bool_or(b.status = 'ok') AS base_fingerprinted
            FROM declared d
            JOIN models b ON b.model_id <> d.model_id AND (
                lower(d.base) = lower(b.model_id)
                OR lower(d.base) = lower(b.name)
                OR lower(d.base) = lower(b.location))
            GROUP BY d.model_id
        ),
        lora_parts AS (
            SELECT t.model_id, t.shape,
                regexp_extract(t.name, '^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$', 1) AS module,
                regexp_extract(t.name, '^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$', 2) AS part
            FROM tensors t JOIN models a ON a.model_id = t.model_id AND a.format = 'peft-lora'
            WHERE regexp_matches(t.name, '^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$')
        ),
        adapter_needs AS (
            SELECT la.model_id, la.module || '.weight' AS name, true AS required,
                CASE WHEN len(la.shape) = 2 AND coalesce(TRY_CAST(
                        json_extract_string(a.config, '$.fan_in_fan_out') AS BOOLEAN), false)
                    THEN [la.shape[2], lb.shape[1]]
                    ELSE list_concat([lb.shape[1]], la.shape[2:])
                END AS shape
            FROM lora_parts la
            JOIN lora_parts lb ON lb.model_id = la.model_id AND lb.module = la.module
                AND la.part = 'A' AND lb.part = 'B'
            JOIN models a ON a.model_id = la.model_id
            UNION ALL
            SELECT t.model_id, regexp_replace(t.name, '^base_model\.model\.', '') AS name,
                false AS required, t.shape
            FROM tensors t JOIN models a ON a.model_id = t.model_id AND a.format = 'peft-lora'
            WHERE NOT regexp_matches(regexp_replace(t.name, '^base_model\.model\.', ''),
                '^.+?\.lora_[A-Za-z_]+(\.|$)')
        ),
        adapter_fits AS (
            SELECT pairs.model_id, bool_or(pairs.fits) AS fits
            FROM (
                SELECT n.model_id, b.model_id AS base_id,
                    bool_and(CASE WHEN n.required THEN t.shape IS NOT DISTINCT FROM n.shape
                        ELSE t.shape IS NULL OR t.shape = n.shape END) AS fits
                FROM (SELECT DISTINCT model_id, base FROM declared) d
                JOIN models b ON b.model_id <> d.model_id AND b.status = 'ok' AND (
                    lower(d.base) = lower(b.model_id)
                    OR lower(d.base) = lower(b.name)
                    OR lower(d.base) = lower(b.location))
                JOIN adapter_needs n ON n.model_id = d.model_id
                LEFT JOIN tensors t ON t.model_id = b.model_id AND t.name = n.name
                GROUP BY n.model_id, b.model_id
            ) pairs
            GROUP BY pairs.model_id
        ),
        matched AS (
            SELECT d.model_id, list(DISTINCT d.base ORDER BY d.base) AS matched_bases
            FROM declared d
            JOIN edges e ON e.child_id = d.model_id
            LEFT JOIN models p ON p.model_id = e.parent_id
            WHERE lower(d.base) = lower(e.parent_id)
                OR lower(d.base) = lower(p.name)
                OR lower(d.base) = lower(p.location)
            GROUP BY d.model_id
        ),
        judged AS (
            SELECT m.model_id, m.name,
                coalesce(m.declared_base_models, []::VARCHAR[]) AS declared_base_models,
                coalesce(k.base_ids, []::VARCHAR[]) AS declared_base_ids,
                coalesce(p.inferred_parents, []::VARCHAR[]) AS inferred_parents,
                coalesce(p.inferred_parent_ids, []::VARCHAR[]) AS inferred_parent_ids,
                coalesce(p.relations, []::VARCHAR[]) AS relations,
                coalesce(p.directions, []::VARCHAR[]) AS directions,
                coalesce(x.matched_bases, []::VARCHAR[]) AS matched_bases,
                CASE
                    WHEN len(coalesce(m.declared_base_models, []::VARCHAR[])) = 0 THEN 'proposed'
                    WHEN x.model_id IS NOT NULL THEN 'agrees'
                    WHEN k.model_id IS NULL THEN 'unknown_base'
                    WHEN m.status IS DISTINCT FROM 'ok' OR NOT k.base_fingerprinted
                        THEN 'unverified'
                    WHEN m.format = 'peft-lora' AND coalesce(f.fits, false) THEN 'compatible'
                    WHEN m.format = 'peft-lora' THEN 'incompatible'
                    ELSE 'disagrees'
                END AS status
            FROM models m
            LEFT JOIN parents p ON p.model_id = m.model_id
            LEFT JOIN known k ON k.model_id = m.model_id
            LEFT JOIN matched x ON x.model_id = m.model_id
            LEFT JOIN adapter_fits f ON f.model_id = m.model_id
            WHERE len(coalesce(m.declared_base_models, []::VARCHAR[])) > 0
                OR p.model_id IS NOT NULL
        )
    SELECT j.*,
        CASE WHEN j.status <> 'agrees' THEN b.name END AS proposed_base,
        CASE WHEN j.status <> 'agrees' THEN b.parent_id END AS proposed_base_id,
        CASE WHEN j.status <> 'agrees' THEN b.relation END AS proposed_relation,
        CASE WHEN j.status <> 'agrees' THEN b.direction END AS proposed_direction,
        CASE WHEN j.status <> 'agrees' THEN b.confidence END AS proposed_confidence
    FROM judged j
    LEFT JOIN best b ON b.model_id = j.model_id AND b.rank = 1;

COMMENT ON VIEW declared_vs_inferred IS 'Per model with declared bases or inferred parents: whether the weights agree with the declared base, or the base they propose.';
COMMENT ON COLUMN declared_vs_inferred.model_id IS 'The model (models.model_id).';
COMMENT ON COLUMN declared_vs_inferred.name IS 'The model''s name.';
COMMENT ON COLUMN declared_vs_inferred.declared_base_models IS 'Base models its card or config declares ([] if none).';
COMMENT ON COLUMN declared_vs_inferred.declared_base_ids IS 'model_ids of the indexed models the declared bases name by id, name or location (case-insensitive); [] if none is indexed.';
COMMENT ON COLUMN declared_vs_inferred.inferred_parents IS 'Names of the parents inferred from weights (id when the parent has no name).';
COMMENT ON COLUMN declared_vs_inferred.inferred_parent_ids IS 'model_ids of the inferred parents, in the same order.';
COMMENT ON COLUMN declared_vs_inferred.relations IS 'Relation of each inferred parent edge, in the same order.';
COMMENT ON COLUMN declared_vs_inferred.directions IS 'Direction of each inferred parent edge (edges.direction), in the same order: ''uncertain'' when the weights could not tell which end is the parent.';
COMMENT ON COLUMN declared_vs_inferred.matched_bases IS 'Declared bases that name an inferred parent by id, name or location (case-insensitive).';
COMMENT ON COLUMN declared_vs_inferred.status IS '''agrees'' (a declared base is an inferred parent), ''disagrees'' (the weights give another parent or none), ''unknown_base'' (no declared base is indexed), ''unverified'' (the model or its indexed bases have no fingerprint), for a PEFT LoRA adapter ''compatible'' (a declared base has the shapes it needs, though another base or none was inferred) or ''incompatible'' (no declared base has them; they stand for disagrees), or ''proposed'' (no declared base; see proposed_base).';
COMMENT ON COLUMN declared_vs_inferred.proposed_base IS 'Name of the most confident inferred parent, the base the weights propose; NULL when status is agrees or no parent was inferred.';
COMMENT ON COLUMN declared_vs_inferred.proposed_base_id IS 'model_id of proposed_base.';
COMMENT ON COLUMN declared_vs_inferred.proposed_relation IS 'Relation of the proposed base''s edge: {Relation.text}.';
COMMENT ON COLUMN declared_vs_inferred.proposed_direction IS 'Direction of the proposed base''s edge: ''inferred'', or ''uncertain'' when the weights could not tell whether the proposed base is the parent or the child.';
COMMENT ON COLUMN declared_vs_inferred.proposed_confidence IS 'Confidence in [0, 1] of the proposed base''s edge (edges.confidence).';

-- Edges with readable names, for browsing.
CREATE VIEW lineage AS
    SELECT e.parent_id, p.name AS parent_name, e.child_id, c.name AS child_name,
        e.relation, e.direction, e.confidence, e.distance, e.weight, c.family_id
    FROM edges e
    LEFT JOIN models p ON p.model_id = e.parent_id
    LEFT JOIN models c ON c.model_id = e.child_id;

COMMENT ON VIEW lineage IS 'The edges table with parent and child names and the child''s family, for browsing.';
COMMENT ON COLUMN lineage.parent_id IS 'The model derived from.';
COMMENT ON COLUMN lineage.parent_name IS 'Name of the parent model.';
COMMENT ON COLUMN lineage.child_id IS 'The derived model.';
COMMENT ON COLUMN lineage.child_name IS 'Name of the child model.';
COMMENT ON COLUMN lineage.relation IS '{Relation.text}.';
COMMENT ON COLUMN lineage.direction IS '''inferred'', or ''uncertain'' when the weights could not tell which end is the parent.';
COMMENT ON COLUMN lineage.confidence IS 'Confidence in [0, 1] of the edge.';
COMMENT ON COLUMN lineage.distance IS 'Weight distance between parent and child fingerprints.';
COMMENT ON COLUMN lineage.weight IS 'For merges: share of this parent in the child; NULL otherwise.';
COMMENT ON COLUMN lineage.family_id IS 'Family of the child model.';
