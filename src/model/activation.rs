//! The non-linearity after a layer, in its own file because both the layers
//! (`layers.rs`, candle ops) and the fused CPU kernels (`ops/`, plain slices) need it, and
//! neither should import the other just for this type.

use candle_core::{Result, Tensor};

/// Non-linearity after a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// DGCNN uses a leaky ReLU with slope 0.2.
    LeakyRelu(f64),
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(slope) => {
                // max(x, slope * x) for 0 < slope < 1: two passes, no comparison mask.
                x.maximum(&(x * slope)?)
            }
        }
    }

    /// Negative-side slope (1 = identity, 0 = ReLU): all three are `z > 0 ? z : z * slope`,
    /// which is how the fused kernels evaluate them.
    pub(crate) fn negative_slope(self) -> f32 {
        match self {
            Activation::None => 1.0,
            Activation::Relu => 0.0,
            Activation::LeakyRelu(s) => s as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The slice form the fused kernels use agrees with `apply`.
    #[test]
    fn negative_slope_matches_apply() {
        let v = [-2f32, -0.5, 0.0, 0.25, 3.0];
        let x = Tensor::new(&v, &Device::Cpu).unwrap();
        for act in [
            Activation::None,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
        ] {
            let got: Vec<f32> = act.apply(&x).unwrap().to_vec1().unwrap();
            let s = act.negative_slope();
            let want: Vec<f32> = v.iter().map(|&z| if z > 0.0 { z } else { z * s }).collect();
            assert_eq!(got, want, "{act:?}");
        }
    }
}
