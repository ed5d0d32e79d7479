# An older commit never applies over a newer one.
#
# Two quick commits start two deploy builds; whichever gets the state lock
# second would otherwise apply its image and configuration over the other's,
# even if it is the older commit. Each apply carries release_sequence (Cloud
# Build passes the build's creation time in milliseconds) and records it as
# an output. Here, during the plan, with the state lock already held by this
# apply, the last applied value is read back from this configuration's own
# state; a lower value fails the plan before anything changes. The read and
# the write happen under the same lock, so two builds cannot both pass.
#
# The deploy step also compares the two values before `terraform apply` and
# skips an outdated build with a message; this precondition is what makes
# the rule hold when both builds pass that early check at the same time.

data "terraform_remote_state" "applied" {
  backend = "gcs"

  config = {
    bucket = var.state_bucket
    prefix = var.state_prefix
  }

  # The first apply finds no output yet.
  defaults = {
    release_sequence = 0
  }
}

resource "terraform_data" "release" {
  input = {
    sequence  = var.release_sequence
    image_tag = var.image_tag
  }

  lifecycle {
    precondition {
      condition     = var.release_sequence >= data.terraform_remote_state.applied.outputs.release_sequence
      error_message = "A newer release is already applied (its release_sequence is higher than this one's): this older commit is not applied over it. To roll back on purpose, apply with -var=release_sequence=$(date +%s%3N) or rerun the older commit's build (docs/deploy.md, Rollback)."
    }
  }
}
