//! On-disk offline material (written by `mpc-pipe offline`). Filled in below.
