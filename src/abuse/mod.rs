//! The amplification defenses: DNS Cookies (RFC 7873, server cookies as
//! RFC 9018 makes them) and response rate limiting (RRL, as BIND's and
//! Knot's). Plain functions and a table the transports call: the answer
//! path checks and writes cookies, a datagram transport asks [`rrl::Rrl`]
//! before sending. Neither allocates per query.

pub mod cookie;
pub mod rrl;
