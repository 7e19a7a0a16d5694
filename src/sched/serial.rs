//! The serial strategy: a node's work on its whole tensor, in the calling lane. (A private
//! linear layer's serial form, one message E ‖ F, is in `linear`, taken by the lane of the
//! first rows.) Depends on model::mpc and proto.

use crate::error::Result;
use crate::model::mpc::PieceFn;
use crate::proto::{Ctx, Share};

/// `f` on the whole of `xs`, on the node's own context.
pub fn split(ctx: &Ctx, xs: &[Share], f: &PieceFn) -> Result<Share> {
    f(ctx, xs)
}
