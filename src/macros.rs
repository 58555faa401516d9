//! Crate-internal macros.

/// The `get_ref` / `get_mut` / `into_inner` accessors of a middleware whose wrapped service is the field
/// `inner: S`, as tower's middleware have them.
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the middleware and returns the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use inner_service_accessors;
