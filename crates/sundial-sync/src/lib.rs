//! The clock-discipline algorithm: pure, time is an argument.
#![forbid(unsafe_code)]
