# The knowledge base (docs/decisions/0015-knowledge-base.md): each business's
# documents, chunked and embedded by the profiles build
# (cloudbuild-profiles.yaml), searched by processor_fn with a Firestore
# nearest-neighbour query.

# ---------------------------------------------------------------- settings ---

variable "openai_embedding_model" {
  type        = string
  description = "Embedding model of the knowledge base, on the same OpenAI-compatible API as the chat model (env OPENAI_EMBEDDING_MODEL). Changing it re-embeds every business's documents at the next profiles build."
  default     = "text-embedding-3-small"
}

variable "openai_embedding_dimensions" {
  type        = number
  description = "Length of the embedding vectors, asked of the model and declared by the vector index (env OPENAI_EMBEDDING_DIMENSIONS). Firestore indexes up to 2048; text-embedding-3-small gives up to 1536."
  default     = 1536

  validation {
    condition     = var.openai_embedding_dimensions >= 1 && var.openai_embedding_dimensions <= 2048
    error_message = "openai_embedding_dimensions must be between 1 and 2048 (Firestore's largest vector, the range shared/config.py accepts)."
  }
}

variable "knowledge_collection" {
  type        = string
  description = "Firestore collection of the knowledge chunks, one document per chunk; its vector index is below (env KNOWLEDGE_COLLECTION)."
  default     = "knowledge_chunks"
}

variable "knowledge_top_k" {
  type        = number
  description = "Nearest chunks retrieved for a message of a business with knowledge (env KNOWLEDGE_TOP_K)."
  default     = 4

  validation {
    condition     = var.knowledge_top_k >= 1 && var.knowledge_top_k <= 20
    error_message = "knowledge_top_k must be between 1 and 20 (the range shared/config.py accepts)."
  }
}

variable "knowledge_max_distance" {
  type        = number
  description = "Cosine distance above which a chunk is not close enough to a message (env KNOWLEDGE_MAX_DISTANCE); tune it with make eval for the embedding model."
  default     = 0.7

  validation {
    condition     = var.knowledge_max_distance >= 0 && var.knowledge_max_distance <= 2
    error_message = "knowledge_max_distance must be between 0 and 2 (cosine distance; the range shared/config.py accepts)."
  }
}

variable "knowledge_prompt_tokens" {
  type        = number
  description = "Token budget of the documents' block in the model request, however many chunks match (env KNOWLEDGE_PROMPT_TOKENS)."
  default     = 1500

  validation {
    condition     = var.knowledge_prompt_tokens >= 300 && var.knowledge_prompt_tokens <= 50000
    error_message = "knowledge_prompt_tokens must be between 300 and 50000 (the range shared/config.py accepts)."
  }
}

variable "knowledge_chunk_chars" {
  type        = number
  description = "Largest chunk the profiles build cuts a document into, in characters (env KNOWLEDGE_CHUNK_CHARS)."
  default     = 1200

  validation {
    condition     = var.knowledge_chunk_chars >= 200 && var.knowledge_chunk_chars <= 4000
    error_message = "knowledge_chunk_chars must be between 200 and 4000 (the range shared/config.py accepts)."
  }
}

variable "knowledge_max_chunks" {
  type        = number
  description = "Chunks one business's documents may make; more fail the profiles build (env KNOWLEDGE_MAX_CHUNKS)."
  default     = 2000

  validation {
    condition     = var.knowledge_max_chunks >= 1 && var.knowledge_max_chunks <= 10000
    error_message = "knowledge_max_chunks must be between 1 and 10000 (the range shared/config.py accepts)."
  }
}

variable "knowledge_max_document_bytes" {
  type        = number
  description = "Largest knowledge document file the profiles build reads (env KNOWLEDGE_MAX_DOCUMENT_BYTES)."
  default     = 5242880

  validation {
    condition     = var.knowledge_max_document_bytes >= 1024 && var.knowledge_max_document_bytes <= 52428800
    error_message = "knowledge_max_document_bytes must be between 1024 and 52428800 (the range shared/config.py accepts)."
  }
}

locals {
  # What the profiles build must share with processor_fn, taken from its
  # environment: where profiles and chunks live, the embedding model and its
  # dimensions (a query embedded otherwise finds nothing), the OpenAI
  # endpoint, and the limits. Rendered for `gcloud builds submit
  # --substitutions` by the output below; each _NAME becomes the variable NAME
  # of the build's steps.
  profiles_build = {
    OPENAI_API_KEY_SECRET        = local.env.processor.OPENAI_API_KEY_SECRET
    OPENAI_BASE_URL              = local.env.processor.OPENAI_BASE_URL
    OPENAI_MODEL                 = local.env.processor.OPENAI_MODEL
    OPENAI_EMBEDDING_MODEL       = local.env.processor.OPENAI_EMBEDDING_MODEL
    OPENAI_EMBEDDING_DIMENSIONS  = local.env.processor.OPENAI_EMBEDDING_DIMENSIONS
    PROFILES_COLLECTION          = local.env.processor.PROFILES_COLLECTION
    PROFILE_CACHE_SECONDS        = local.env.processor.PROFILE_CACHE_SECONDS
    KNOWLEDGE_COLLECTION         = local.env.processor.KNOWLEDGE_COLLECTION
    KNOWLEDGE_TOP_K              = local.env.processor.KNOWLEDGE_TOP_K
    KNOWLEDGE_MAX_DISTANCE       = local.env.processor.KNOWLEDGE_MAX_DISTANCE
    KNOWLEDGE_PROMPT_TOKENS      = local.env.processor.KNOWLEDGE_PROMPT_TOKENS
    KNOWLEDGE_CHUNK_CHARS        = local.env.processor.KNOWLEDGE_CHUNK_CHARS
    KNOWLEDGE_MAX_CHUNKS         = local.env.processor.KNOWLEDGE_MAX_CHUNKS
    KNOWLEDGE_MAX_DOCUMENT_BYTES = local.env.processor.KNOWLEDGE_MAX_DOCUMENT_BYTES
    # The send lanes the build sets the rates of (terraform/tasks.tf).
    TASKS_LOCATION       = local.env.processor.TASKS_LOCATION
    TASKS_QUEUE          = local.env.processor.TASKS_QUEUE
    SEND_LANES           = local.env.processor.SEND_LANES
    SEND_RATE_PER_SECOND = local.env.processor.SEND_RATE_PER_SECOND
    SENDER_MPS_LIMIT     = local.env.processor.SENDER_MPS_LIMIT
  }
}

# ------------------------------------------------------------------ indexes ---

# The one query the knowledge base makes (shared/adapters/knowledge_store.py,
# VECTOR_QUERY): equality on `corpus` (business and version), nearest by
# cosine on `embedding`. Firestore refuses a prefiltered vector query without
# a composite index of exactly these fields; the emulator answers it without
# one, so tests/infra/test_knowledge_infra.py checks this index against the
# code. Firestore puts __name__ between the filter and the vector field;
# declared, so the plan stays clean. A flat index: exact search, and the
# prefilter keeps each search to one business's chunks.
resource "google_firestore_index" "knowledge" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = var.knowledge_collection

  fields {
    field_path = "corpus"
    order      = "ASCENDING"
  }

  fields {
    field_path = "__name__"
    order      = "ASCENDING"
  }

  fields {
    field_path = "embedding"
    vector_config {
      dimension = var.openai_embedding_dimensions
      flat {}
    }
  }
}

# The chunk's text (up to KNOWLEDGE_CHUNK_CHARS) and its vector are never
# filtered or sorted on: no single-field indexes, which would only cost
# index writes (and a text over 1500 bytes is cut in an index entry anyway).
resource "google_firestore_field" "knowledge_unindexed" {
  for_each = toset(["text", "embedding"])

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = var.knowledge_collection
  field      = each.key

  index_config {}
}

# ------------------------------------------------------------------- access ---

# The profiles build embeds the documents (and asks the model for make eval),
# so it reads the OpenAI key; the processor is the only other reader.
resource "google_secret_manager_secret_iam_member" "openai_key_profiles" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.secret["openai_api_key"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = data.google_service_account.profiles.member
}

output "profiles_build_substitutions" {
  description = "Pass to gcloud builds submit --config=cloudbuild-profiles.yaml (after a comma in --substitutions): the settings the profiles build shares with processor_fn, so it embeds and stores as the processor searches."
  value       = join(",", [for name, value in local.profiles_build : "_${name}=${value}"])
}
