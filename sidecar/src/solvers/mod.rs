//! Challenge solvers: what the CA's validator is shown. The ACME protocol
//! lives in `acme`; solvers only publish and withdraw answers.

pub mod http01;
