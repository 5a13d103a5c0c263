
pub mod fake_kube;
