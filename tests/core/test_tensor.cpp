// Tensors: views share storage, shapes and dtypes are checked, 16-bit floats
// round to nearest even, devices parse, and messages name what went wrong.
#include <gtest/gtest.h>

#include <cmath>

#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace cohort::core {
namespace {

TEST(Tensor, ViewsShareStorageAndSlicesOffsetIt) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, Shape{3, 2});
  Tensor v = t.view(Shape{2, 3});
  EXPECT_TRUE(v.shares_storage_with(t));
  v.data<float>()[4] = 40;
  EXPECT_EQ(t.to_vector()[4], 40);
  Tensor rows = t.slice(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 2}));
  EXPECT_EQ(rows.to_vector(), (std::vector<double>{2, 3, 40, 5}));
  Tensor f = t.flat(2, 3);
  EXPECT_EQ(f.to_vector(), (std::vector<double>{2, 3, 40}));
  EXPECT_THROW(t.view(Shape{4, 2}), Error);
  EXPECT_THROW(t.slice(2, 4), Error);
}

TEST(Tensor, CloneIsIndependentAndZeroClears) {
  Tensor t = Tensor::full(Shape{4}, 3.0);
  Tensor c = t.clone();
  EXPECT_FALSE(c.shares_storage_with(t));
  t.zero_();
  EXPECT_EQ(t.to_vector(), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(c.to_vector(), (std::vector<double>{3, 3, 3, 3}));
}

TEST(Tensor, WrongDtypeAccessNamesBothTypes) {
  Tensor t = Tensor::zeros(Shape{2}, DType::i32);
  try {
    (void)t.data<float>();
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("i32"), std::string::npos) << m;
    EXPECT_NE(m.find("f32"), std::string::npos) << m;
  }
  Tensor a = Tensor::zeros(Shape{2}, DType::f32), b = Tensor::zeros(Shape{3}, DType::f32);
  EXPECT_THROW(a.copy_from(b), Error);
}

TEST(Tensor, SixteenBitFloatsRoundToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even (1).
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);
  EXPECT_TRUE(std::isnan(static_cast<float>(BFloat16(NAN))));
  EXPECT_EQ(static_cast<float>(Half(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(static_cast<float>(Half(70000.0f))));
  EXPECT_EQ(static_cast<float>(Half(1.0f + 0x1p-11f)), 1.0f);  // tie to even
  EXPECT_EQ(static_cast<float>(Half(0x1p-24f)), 0x1p-24f);     // smallest subnormal
  Tensor t = Tensor::from_vector({1.5, -2.25, 1e-3}, Shape{3}).cast_cpu(DType::bf16);
  EXPECT_EQ(t.dtype(), DType::bf16);
  EXPECT_EQ(t.nbytes(), 6u);
  EXPECT_NEAR(t.to_vector()[2], 1e-3, 1e-5);
}

TEST(Device, ParsesAndRejects) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(1).str(), "cuda:1");
  EXPECT_THROW(Device::parse("gpu"), Error);
  EXPECT_THROW(Device::parse("cuda:x"), Error);
}

TEST(Tensor, StrDescribesDtypeShapeAndDevice) {
  EXPECT_EQ(Tensor::zeros(Shape{2, 3}, DType::bf16).str(), "bf16[2, 3] on cpu");
}

}  // namespace
}  // namespace cohort::core
