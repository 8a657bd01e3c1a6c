<?php
/*
 * SimpleSAMLphp 1.19 as a test IdP: the tests write this file, with the
 * placeholders filled in, into a private config dir (SIMPLESAMLPHP_CONFIG_DIR).
 * Only what differs from the defaults is set.
 */
$config = [
    'baseurlpath' => '{{BASE_URL}}/',
    'certdir' => '{{DIR}}/cert/',
    'metadatadir' => '{{DIR}}/metadata/',
    'loggingdir' => '{{DIR}}/log/',
    'datadir' => '{{DIR}}/data/',
    'tempdir' => '{{DIR}}/tmp',
    'secretsalt' => '{{SECRET_SALT}}',
    'auth.adminpassword' => '{{ADMIN_PASSWORD}}',
    'technicalcontact_name' => 'saml_middleware tests',
    'technicalcontact_email' => 'tests@example.org',
    'timezone' => 'UTC',
    'logging.level' => SimpleSAML\Logger::DEBUG,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    // Log every SAML message sent and received (the first place to look when a test fails).
    'debug' => ['saml' => true, 'backtraces' => true],
    'showerrors' => true,
    'errorreporting' => false,
    'enable.saml20-idp' => true,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true],
    'store.type' => 'phpsession',
    'session.phpsession.savepath' => '{{DIR}}/sessions',
    // Plain http on 127.0.0.1: a Secure cookie would never come back.
    'session.cookie.secure' => false,
    // Where it may send the browser (logout's ReturnTo): our SPs, on other loopback ports.
    'trusted.url.domains' => ['127\\.0\\.0\\.1:[0-9]+'],
    'trusted.url.regex' => true,
    'language.default' => 'en',
];
